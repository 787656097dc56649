"""The machinery that runs models over chunks of records: batched runner, streaming output, shards, resume."""
