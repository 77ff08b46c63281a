# The classifier: each model of the study trained once on the train cache (best epoch by val
# AUC), then predicting every split. A killed train job resumes from its model folder's
# checkpoint.pt when rerun; when Snakemake reruns it because the recipe or the data changed,
# --restart-if-changed starts it afresh.


rule train:
    input:
        train="results/cache/train.h5",
        val="results/cache/val.h5",
    output:
        model=R("model/model.pt"),
        history=R("model/history.csv"),
        metrics=R("model/metrics.json"),
    log:
        R("logs/train.log"),
    benchmark:
        R("benchmarks/train.tsv")
    conda:
        "../../envs/xiqa.yaml"
    threads: 4
    resources:
        mem_mb=16000,
        runtime=24 * 60,
    params:
        out=lambda wildcards, output: os.path.dirname(output.model),
        options=train_options,
    shell:
        "xiqa train --train {input.train:q} --val {input.val:q} --out {params.out:q}"
        " {params.options} --restart-if-changed 2> {log:q}"


rule predict:
    input:
        model=R("model/model.pt"),
        images="results/cache/{split}.h5",
    output:
        predictions=R("predictions/{split}.csv"),
        metrics=R("predictions/{split}.json"),
    log:
        R("logs/predict/{split}.log"),
    benchmark:
        R("benchmarks/predict/{split}.tsv")
    conda:
        "../../envs/xiqa.yaml"
    threads: 2
    resources:
        mem_mb=8000,
        runtime=60,
    shell:
        "xiqa predict --model {input.model:q} --images {input.images:q}"
        " --out {output.predictions:q} --metrics {output.metrics:q} 2> {log:q}"
