"""The benchmark suite behind run.py: peers, servers, workloads and the report."""
