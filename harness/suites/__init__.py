"""How a suite file becomes jobs, one concern a module; harness.suites.expand is the face the rest of the harness uses.

source (the TOML and file:line errors), keys (which keys a suite takes, and their checks), layers (how
settings merge), environments, machines and precisions (the axes beyond backends x models x videos x
devices), candidates (the matrix's product and [[job]] entries), selection ([[exclude]], --backend, ``when``),
host (what this machine offers ``when``), specs (merged settings to JobSpecs, sweeps). The shipped suites,
default.toml and example.toml, live in this folder too.
"""
