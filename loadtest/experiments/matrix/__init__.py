"""The failure-rate matrix: every scenario against every configuration, judged against the expectations,
reported as tables and a heatmap."""
