"""Notifications of outcomes: delivery callbacks and mail back to email senders."""
