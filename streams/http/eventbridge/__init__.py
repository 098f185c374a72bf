"""The EventBridge-compatible API (JSON 1.1, X-Amz-Target: AWSEvents.*) and SigV4 verification."""
