# The classifier: train once on the train cache (best epoch by val AUC), predict every split.
# A killed train job resumes from results/model/checkpoint.pt when rerun; when Snakemake reruns
# it because the recipe or the data changed, --restart-if-changed starts it afresh.


rule train:
    input:
        train="results/cache/train.h5",
        val="results/cache/val.h5",
    output:
        model="results/model/model.pt",
        history="results/model/history.csv",
        metrics="results/model/metrics.json",
    log:
        "results/logs/train.log",
    benchmark:
        "results/benchmarks/train.tsv"
    conda:
        "../../envs/xiqa.yaml"
    threads: 4
    resources:
        mem_mb=16000,
        runtime=24 * 60,
    params:
        out=lambda wildcards, output: os.path.dirname(output.model),
        options=train_options(),
    shell:
        "xiqa train --train {input.train:q} --val {input.val:q} --out {params.out:q}"
        " {params.options} --restart-if-changed 2> {log:q}"


rule predict:
    input:
        model="results/model/model.pt",
        images="results/cache/{split}.h5",
    output:
        predictions="results/predictions/{split}.csv",
        metrics="results/predictions/{split}.json",
    log:
        "results/logs/predict/{split}.log",
    benchmark:
        "results/benchmarks/predict/{split}.tsv"
    conda:
        "../../envs/xiqa.yaml"
    threads: 2
    resources:
        mem_mb=8000,
        runtime=60,
    shell:
        "xiqa predict --model {input.model:q} --images {input.images:q}"
        " --out {output.predictions:q} --metrics {output.metrics:q} 2> {log:q}"
