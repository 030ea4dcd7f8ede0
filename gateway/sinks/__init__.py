"""Where records go: the local files, Kinesis, and the sink contract."""
