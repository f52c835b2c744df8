"""Test support: process inspection, clients with timeouts, waiting with deadlines."""
