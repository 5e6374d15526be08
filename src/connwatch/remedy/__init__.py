"""Ready-to-apply remedies generated from findings (firewall rules, config snippets)."""
