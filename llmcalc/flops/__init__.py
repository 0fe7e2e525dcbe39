"""How many FLOPs: closed form (formula, conventions), the counters (count), analysis, report."""
