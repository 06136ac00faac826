"""SMTP / LMTP ingress: `server.start_smtp` (aiosmtpd on the bridge loop), `text` (mail → SMS
text, pure), `replies` (every reply line)."""
