"""What the reconciler asks of the API server (deploy/ RBAC is tested against this)."""

MANAGE_VERBS = frozenset({"get", "list", "watch", "create", "patch", "delete"})  # in each namespace it manages
OWN_NAMESPACE = frozenset(
    {
        ("", "configmaps", "get"),
        ("", "configmaps", "list"),  # the other apps' inventories (who declares what), our inventory's shards
        ("", "configmaps", "create"),
        ("", "configmaps", "patch"),
        ("", "configmaps", "delete"),  # superseded inventory shards
        ("", "events", "create"),
    }
)  # inventory and status, Events
