"""What the reconciler asks of the API server (deploy/ RBAC is tested against this)."""

MANAGE_VERBS = frozenset({"get", "list", "watch", "create", "patch", "delete"})  # in each namespace it manages
OWN_NAMESPACE = frozenset(
    {("", "configmaps", "get"), ("", "configmaps", "create"), ("", "configmaps", "patch"), ("", "events", "create")}
)  # inventory and status, Events
