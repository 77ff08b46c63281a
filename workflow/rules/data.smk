# Data: synthetic dataset (optional) -> split manifests -> HDF5 image caches.


rule synth:
    output:
        directory("results/synthetic"),
    log:
        "results/logs/synth.log",
    benchmark:
        "results/benchmarks/synth.tsv"
    conda:
        "../../envs/xiqa.yaml"
    threads: 2
    resources:
        mem_mb=2000,
        runtime=30,
    params:
        n_train=config["synthetic"]["n_train"],
        n_dev=config["synthetic"]["n_dev"],
        n_test=config["synthetic"]["n_test"],
        seed=config["synthetic"]["seed"],
    shell:
        "xiqa synth {output:q} --n-train {params.n_train} --n-dev {params.n_dev}"
        " --n-test {params.n_test} --seed {params.seed} --num-workers {threads} 2> {log:q}"


rule split:
    input:
        dataset_root(),
    output:
        expand("results/splits/{split}.csv", split=CACHED_SPLITS),
    log:
        "results/logs/split.log",
    benchmark:
        "results/benchmarks/split.tsv"
    conda:
        "../../envs/xiqa.yaml"
    threads: 1
    resources:
        mem_mb=2000,
        runtime=30,
    params:
        out=lambda wildcards, output: os.path.dirname(output[0]),
        test_size=config["split"]["test_size"],
        seed=config["split"]["seed"],
    shell:
        "xiqa split --dataset {input:q} --out {params.out:q} --test-size {params.test_size}"
        " --seed {params.seed} 2> {log:q}"


rule prepare:
    input:
        "results/splits/{split}.csv",
    output:
        "results/cache/{split}.h5",
    log:
        "results/logs/prepare/{split}.log",
    benchmark:
        "results/benchmarks/prepare/{split}.tsv"
    conda:
        "../../envs/xiqa.yaml"
    threads: 4
    resources:
        mem_mb=4000,
        runtime=120,
    params:
        size=config["image_size"],
    shell:
        "xiqa prepare {input:q} --size {params.size} --out {output:q}"
        " --num-workers {threads} 2> {log:q}"
