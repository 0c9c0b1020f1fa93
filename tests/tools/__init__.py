"""Tools the demo and the tests share with a person at a shell (each script documents itself)."""
