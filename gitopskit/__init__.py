"""The shared kit both halves import (and which imports neither): HTTP server plumbing, kube
helpers, the git workspace, webhook authentication and base errors."""
