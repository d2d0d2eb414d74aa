"""Report: summary/artifact columns, tables, figures, rendering, provenance and the
report plan. Imports the layers below; never torch at import time."""
