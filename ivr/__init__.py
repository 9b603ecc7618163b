"""The Asterisk side: AMI controller, call and queue state, overflow, leader days, call-backs, local PBX."""
