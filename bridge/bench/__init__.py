"""Load generators and no-op servers; imported by nothing in the product but the CLI's bench command."""
