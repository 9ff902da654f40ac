"""The alembic environment of the lineage index: `env.py`, the revision template and `versions/`.

Nothing here is imported as a module; alembic loads these files from the package folder, which
`streams.migrate` names in the configuration it builds in code (there is no alembic.ini).
"""
