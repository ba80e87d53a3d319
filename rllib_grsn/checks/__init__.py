"""What `rllib train file` checks before Ray starts: the YAML file, every setting of the
experiments (RLlib's own checks first), the stop criteria, and the resources, storage and tracking
server a run depends on. Each problem is one line naming the key or file and what is allowed."""
