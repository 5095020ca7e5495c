"""The search loop and its pyribs scheduler."""
