"""How many parameters: closed form (formula, relatives), the real module (count), analysis, report."""
