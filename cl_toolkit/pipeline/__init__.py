"""The orchestration that sequences the layers: the quarterly cycle, its report, the monitoring loop's actions."""
