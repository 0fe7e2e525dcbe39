"""`llmcalc presets`: the built-in presets with their key sizes and parameter counts."""

from llmcalc.cli.options import FormatOpt, JsonOpt, emit_result, output_format


def presets(as_json: JsonOpt = False, fmt: FormatOpt = None) -> None:
    """List the built-in presets with their key sizes and parameter counts."""
    from llmcalc.config.presets import builtin_names, load_config
    from llmcalc.params.formula import param_formula
    from llmcalc.views.report import presets_table

    rows = [(cfg, param_formula(cfg)) for cfg in map(load_config, builtin_names())]
    data = {
        "presets": [
            {
                "name": cfg.name,
                "d_model": cfg.d_model,
                "n_layers": cfg.n_layers,
                "n_heads": cfg.n_heads,
                "n_kv_heads": cfg.n_kv_heads,
                "d_ff": cfg.d_ff,
                "params": formula.total.value,
                **(
                    {
                        "n_experts": cfg.n_experts,
                        "experts_per_token": cfg.experts_per_token,
                        "d_ff_expert": cfg.d_ff_expert,
                        "active_params": formula.active,
                    }
                    if cfg.n_experts
                    else {}
                ),
                "source": cfg.source,
            }
            for cfg, formula in rows
        ]
    }
    emit_result(output_format(as_json, fmt), data, [presets_table(rows)])
