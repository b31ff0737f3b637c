"""The one-node test cluster: the node itself, its host setup, certificates, pods and the instance on it."""
