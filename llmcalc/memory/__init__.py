"""How much memory: closed form (formula, activations), trace, measure, train_step, analysis, report."""
