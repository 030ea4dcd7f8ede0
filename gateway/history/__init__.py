"""Reading records back: replay, its inputs, the raw-stream consumer, Kinesis tail."""
