"""NATS: subject names, JetStream streams, versioned message schemas, and thin adapters."""
