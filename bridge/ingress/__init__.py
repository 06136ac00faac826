"""Ingress adapters, one per wire format (smtp, soap); none imports another."""
