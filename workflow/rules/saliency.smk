# Saliency maps: one job per model x method x split x shard, over the positive images of the split (all
# images for a method the FROC covers).


rule saliency:
    input:
        model=R("model/model.pt"),
        images="results/cache/{split}.h5",
    output:
        R("saliency/{method}/{split}/{shard}.h5"),
    log:
        R("logs/saliency/{method}/{split}/{shard}.log"),
    benchmark:
        R("benchmarks/saliency/{method}/{split}/{shard}.tsv")
    conda:
        "../../envs/xiqa.yaml"
    threads: 2
    resources:
        mem_mb=8000,
        runtime=120,
    params:
        entry=method_entry,
        n_shards=config["n_shards"],
        max_images=max_images_option,
        all_images=all_images_option,
    shell:
        "xiqa saliency --model {input.model:q} --images {input.images:q}"
        " --method {wildcards.method:q} --params {params.entry:q}"
        " --shard {wildcards.shard} --n-shards {params.n_shards} {params.max_images}"
        " {params.all_images}"
        " --out {output:q} 2> {log:q}"
