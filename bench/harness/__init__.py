"""The benchmark's modules; bench/bench.py is the entry point and describes
the topology and the phases. plan: addresses, ports, variants and targets;
system: processes, /proc, BPF stats, sysctl, the metrics text; testbed: the
namespaces and the processes under test; measure: the runs and phases;
report: the results files; chart: chart.png.
"""
