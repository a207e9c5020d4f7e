"""The results folder and what reads it: verification on read, the declared row, the report, the ranked
summary, compare and the notebook."""
