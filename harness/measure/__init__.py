"""What a job's numbers mean: the machine's state while it ran, the validity rules that flag a busy machine,
and the metrics (latency, accuracy, agreement, the precision floor)."""
