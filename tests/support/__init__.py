"""Test support: process inspection, clients with timeouts, waiting with deadlines."""

import os

import pytest

#: For tests that need root.  Outside CI they skip for an unprivileged user;
#: with CI=true they run and fail instead, so CI can never go green by skipping.
needs_root = pytest.mark.skipif(os.geteuid() != 0 and os.environ.get("CI") != "true",
                                reason="needs root (runs, and fails, when CI=true)")
