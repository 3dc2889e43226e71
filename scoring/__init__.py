"""Official-exact AutoDL scoring: NAUC, soft accuracy, ALC, the official files, and a local runner."""
