# Data: synthetic dataset (optional) -> split manifests -> HDF5 image caches.


rule synth:
    output:
        directory("results/synthetic"),
    params:
        n_train=config["synthetic"]["n_train"],
        n_dev=config["synthetic"]["n_dev"],
        n_test=config["synthetic"]["n_test"],
        seed=config["synthetic"]["seed"],
    log:
        "results/logs/synth.log",
    benchmark:
        "results/benchmarks/synth.tsv"
    threads: 2
    resources:
        mem_mb=2000,
        runtime=30,
    conda:
        "../../envs/xiqa.yaml"
    shell:
        "xiqa synth {output:q} --n-train {params.n_train} --n-dev {params.n_dev}"
        " --n-test {params.n_test} --seed {params.seed} --num-workers {threads} 2> {log:q}"


rule split:
    input:
        dataset_root(),
    output:
        expand("results/splits/{split}.csv", split=CACHED_SPLITS),
    params:
        out="results/splits",
        test_size=config["split"]["test_size"],
        seed=config["split"]["seed"],
    log:
        "results/logs/split.log",
    benchmark:
        "results/benchmarks/split.tsv"
    threads: 1
    resources:
        mem_mb=2000,
        runtime=30,
    conda:
        "../../envs/xiqa.yaml"
    shell:
        "xiqa split --dataset {input:q} --out {params.out:q} --test-size {params.test_size}"
        " --seed {params.seed} 2> {log:q}"


rule prepare:
    input:
        "results/splits/{split}.csv",
    output:
        "results/cache/{split}.h5",
    params:
        size=config["image_size"],
    log:
        "results/logs/prepare/{split}.log",
    benchmark:
        "results/benchmarks/prepare/{split}.tsv"
    threads: 4
    resources:
        mem_mb=4000,
        runtime=120,
    conda:
        "../../envs/xiqa.yaml"
    shell:
        "xiqa prepare {input:q} --size {params.size} --out {output:q}"
        " --num-workers {threads} 2> {log:q}"
