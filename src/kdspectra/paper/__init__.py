"""Paper: the paper's numbers, the comparison with them, the claims and their verdict
statistics, and the deviations this run made. Imports the layers below."""
