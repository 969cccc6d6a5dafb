"""Thin triggers, one Blueprint per area. Each decodes its binding and calls one service in shared/."""
