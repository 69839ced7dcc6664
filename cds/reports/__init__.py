"""Governance reports: how often rules fire (shown and silent), and how clinicians answer their cards."""
