"""CDK stacks (composition only) and their components (one construct per module)."""
