"""`imagebot controller`: Flux's ImageRepository / ImagePolicy / ImageUpdateAutomation objects from the cluster,
reconciled one key at a time on the shared runtime (gitopskit: work queue, informers, lease)."""
