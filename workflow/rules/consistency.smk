# A study of several models (config: models): the consistency of each method across them, from
# every model's pointing CSVs; one table and figure for the study.


rule consistency:
    input:
        [
            expand(
                f"results/models/{model}/pointing/{{method}}/{{split}}.csv",
                method=methods,
                split=config["splits"],
            )
            for model, methods in MODEL_METHODS.items()
        ],
    output:
        tables=multiext("results/tables/consistency", ".csv", ".md", ".tex"),
        ranking="results/tables/consistency_ranking.csv",
        peaks="results/tables/consistency_peaks.csv",
        figure=report(
            "results/figures/consistency.png",
            caption="../report/consistency.rst",
            category="Figures",
        ),
        pdf="results/figures/consistency.pdf",
    log:
        "results/logs/consistency.log",
    benchmark:
        "results/benchmarks/consistency.tsv"
    conda:
        "../../envs/xiqa.yaml"
    threads: 1
    resources:
        mem_mb=4000,
        runtime=30,
    params:
        models=json.dumps(
            {
                m: {"arch": MODELS[m]["arch"], "methods": MODEL_METHODS[m]}
                for m in MODELS
            }
        ),
        methods=json.dumps(config["methods"]),
        splits=",".join(config["splits"]),
        tau=config["pointing"]["tau"],
    shell:
        "xiqa consistency --results results --models {params.models:q}"
        " --methods {params.methods:q} --splits {params.splits} --tau {params.tau}"
        " 2> {log:q}"


localrules:
    consistency,
