"""sms-bridge: SOAP and SMTP/LMTP ingress, one normalisation core, SMPP 3.4 upstream."""

__version__ = "0.1.0"
