"""Writers for the results folder: CSV/JSON, plots, the HTML page, annotated video."""
