"""The outbound side: dispatcher, SMPP binds, notifications (callbacks, mail back), retention."""
