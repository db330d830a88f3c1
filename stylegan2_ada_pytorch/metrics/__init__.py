"""Quality metrics computed during and after training (metric_main is the entry point)."""
