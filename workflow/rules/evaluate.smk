# Evaluation, per model of the study: the pointing game per method and split, the randomisation
# test per method, then tables, figures and the report; with audit.enabled, the paper audit per
# method and split; localisation, the FROC and faithfulness per method and split, each with its
# tables. With several models, the consistency of the methods across them (consistency.smk).


rule pointing:
    input:
        model=R("model/model.pt"),
        images="results/cache/{split}.h5",
        shards=method_shards,
    output:
        R("pointing/{method}/{split}.csv"),
    log:
        R("logs/pointing/{method}/{split}.log"),
    benchmark:
        R("benchmarks/pointing/{method}/{split}.tsv")
    conda:
        "../../envs/xiqa.yaml"
    threads: 1
    resources:
        mem_mb=4000,
        runtime=60,
    params:
        tau=config["pointing"]["tau"],
        smooth=smooth_options(),
    shell:
        "xiqa pointing --model {input.model:q} --images {input.images:q} --tau {params.tau}"
        " {params.smooth} --out {output:q}"
        " {input.shards:q} 2> {log:q}"


rule sanity:
    input:
        model=R("model/model.pt"),
        images=f"results/cache/{config['sanity']['split']}.h5",
    output:
        R("sanity/{method}.csv"),
    log:
        R("logs/sanity/{method}.log"),
    benchmark:
        R("benchmarks/sanity/{method}.tsv")
    conda:
        "../../envs/xiqa.yaml"
    # Mostly process start (single-threaded) on the demo: two jobs side by side fill two cores.
    threads: 1
    resources:
        mem_mb=8000,
        runtime=60,
    params:
        entry=method_entry,
        n_images=config["sanity"]["n_images"],
        seed=config["sanity"]["seed"],
        stages=sanity_stages_option(),
    shell:
        "xiqa sanity --model {input.model:q} --images {input.images:q}"
        " --method {wildcards.method:q} --params {params.entry:q}"
        " --n-images {params.n_images} --seed {params.seed} {params.stages}"
        " --out {output:q} 2> {log:q}"


localrules:
    aggregate,
    audit_table,
    localisation_table,
    froc_table,
    faithfulness_table,


rule aggregate:
    input:
        pointing=per_model("pointing/{method}/{split}.csv", split=config["splits"]),
        predictions=expand(
            R("predictions/{split}.csv"), split=config["splits"], allow_missing=True
        ),
        metrics=expand(
            R("predictions/{split}.json"), split=config["splits"], allow_missing=True
        ),
        sanity=per_model("sanity/{method}.csv"),
        caches=expand("results/cache/{split}.h5", split=config["splits"]),
    output:
        tables=multiext(R("tables/pointing_game"), ".csv", ".md", ".tex"),
        classification=multiext(R("tables/classification"), ".csv", ".md"),
        curve=R("tables/pointing_curve.csv"),
        variants=multiext(R("tables/pointing_variants"), ".csv", ".md"),
        energy=multiext(R("tables/energy_pointing"), ".csv", ".md"),
        sanity=R("tables/sanity_randomisation.csv"),
        figures=[
            report(
                R(f"figures/{name}.png"),
                caption=f"../report/{name}.rst",
                category="Figures",
                subcategory=MODEL_SUBCATEGORY,
            )
            for name in FIGURES
        ],
        pdfs=expand(R("figures/{name}.pdf"), name=FIGURES, allow_missing=True),
    log:
        R("logs/aggregate.log"),
    benchmark:
        R("benchmarks/aggregate.tsv")
    conda:
        "../../envs/xiqa.yaml"
    threads: 1
    resources:
        mem_mb=4000,
        runtime=30,
    params:
        results=lambda wildcards, output: os.path.dirname(
            os.path.dirname(output.tables[0])
        ),
        methods=methods_json(),
        splits=",".join(config["splits"]),
        tau=config["pointing"]["tau"],
        curve_factors=",".join(map(str, config["pointing"]["curve_factors"])),
        extra_taus=",".join(map(str, config["pointing"]["extra_taus"])),
        smooth=smooth_options(),
        paper=paper_option(),
    shell:
        "xiqa aggregate --results {params.results:q} --caches results/cache"
        " --methods {params.methods:q} --splits {params.splits}"
        " --tau {params.tau} --curve-factors {params.curve_factors}"
        " --extra-taus={params.extra_taus:q} {params.smooth} {params.paper} 2> {log:q}"


# The paper audit: one job per audited method and split scores every variant of the method on
# the split's positive images with a box (maps are not kept), then one table and figure.
AUDITED = audited_methods()


rule audit:
    input:
        model=R("model/model.pt"),
        images="results/cache/{split}.h5",
    output:
        R("audit/{method}/{split}.csv"),
    log:
        R("logs/audit/{method}/{split}.log"),
    benchmark:
        R("benchmarks/audit/{method}/{split}.tsv")
    conda:
        "../../envs/xiqa.yaml"
    threads: 2
    resources:
        mem_mb=8000,
        runtime=120,
    params:
        variants=audit_variants_json,
        tau=config["pointing"]["tau"],
    shell:
        "xiqa audit --model {input.model:q} --images {input.images:q}"
        " --method {wildcards.method:q} --variants {params.variants:q}"
        " --tau {params.tau} --out {output:q} 2> {log:q}"


rule audit_table:
    input:
        per_model("audit/{method}/{split}.csv", audited_of, split=config["splits"]),
    output:
        tables=multiext(R("tables/audit"), ".csv", ".md", ".tex"),
        figure=report(
            R("figures/audit.png"),
            caption="../report/audit.rst",
            category="Figures",
            subcategory=MODEL_SUBCATEGORY,
        ),
        pdf=R("figures/audit.pdf"),
    log:
        R("logs/audit_table.log"),
    benchmark:
        R("benchmarks/audit_table.tsv")
    conda:
        "../../envs/xiqa.yaml"
    threads: 1
    resources:
        mem_mb=4000,
        runtime=30,
    params:
        results=lambda wildcards, output: os.path.dirname(
            os.path.dirname(output.tables[0])
        ),
        methods=methods_json(audited_of),
        splits=",".join(config["splits"]),
        tau=config["pointing"]["tau"],
        paper=paper_option(),
    shell:
        "xiqa audit-table --results {params.results:q} --methods {params.methods:q}"
        " --splits {params.splits} --tau {params.tau} {params.paper} 2> {log:q}"


# Localisation beyond one peak: per method and split from the shards, then tables and a figure;
# the FROC of the methods that explain every image (froc.methods).


rule localisation:
    input:
        model=R("model/model.pt"),
        images="results/cache/{split}.h5",
        shards=method_shards,
    output:
        R("localisation/{method}/{split}.csv"),
    log:
        R("logs/localisation/{method}/{split}.log"),
    benchmark:
        R("benchmarks/localisation/{method}/{split}.tsv")
    conda:
        "../../envs/xiqa.yaml"
    threads: 1
    resources:
        mem_mb=4000,
        runtime=60,
    shell:
        "xiqa localisation --model {input.model:q} --images {input.images:q}"
        " --out {output:q} {input.shards:q} 2> {log:q}"


rule localisation_table:
    input:
        localisation=per_model(
            "localisation/{method}/{split}.csv", split=config["splits"]
        ),
        pointing=per_model("pointing/{method}/{split}.csv", split=config["splits"]),
    output:
        tables=multiext(R("tables/localisation"), ".csv", ".md", ".tex"),
        sizes=multiext(R("tables/localisation_by_size"), ".csv", ".md"),
        figure=report(
            R("figures/localisation_by_size.png"),
            caption="../report/localisation_by_size.rst",
            category="Figures",
            subcategory=MODEL_SUBCATEGORY,
        ),
        pdf=R("figures/localisation_by_size.pdf"),
    log:
        R("logs/localisation_table.log"),
    benchmark:
        R("benchmarks/localisation_table.tsv")
    conda:
        "../../envs/xiqa.yaml"
    threads: 1
    resources:
        mem_mb=4000,
        runtime=30,
    params:
        results=lambda wildcards, output: os.path.dirname(
            os.path.dirname(output.tables[0])
        ),
        methods=methods_json(),
        splits=",".join(config["splits"]),
        fraction=config["localisation"]["fraction"],
        size_bounds=",".join(map(str, config["localisation"]["size_bounds"])),
    shell:
        "xiqa localisation-table --results {params.results:q} --methods {params.methods:q}"
        " --splits {params.splits} --fraction {params.fraction:q}"
        " --size-bounds {params.size_bounds:q} 2> {log:q}"


rule froc:
    input:
        model=R("model/model.pt"),
        images="results/cache/{split}.h5",
        shards=method_shards,
    output:
        multiext(
            R("froc/{method}/{split}/"),
            "prediction_localization.csv",
            "prediction_classification.csv",
        ),
    log:
        R("logs/froc/{method}/{split}.log"),
    benchmark:
        R("benchmarks/froc/{method}/{split}.tsv")
    conda:
        "../../envs/xiqa.yaml"
    threads: 1
    resources:
        mem_mb=4000,
        runtime=60,
    params:
        out=lambda wildcards, output: os.path.dirname(output[0]),
        radius=config["froc"]["nms_radius"],
        top_k=config["froc"]["top_k"],
        score=config["froc"]["score"],
    shell:
        "xiqa froc --model {input.model:q} --images {input.images:q} --out {params.out:q}"
        " --radius {params.radius:q} --top-k {params.top_k:q} --score {params.score:q}"
        " {input.shards:q} 2> {log:q}"


rule froc_table:
    input:
        predictions=per_model(
            "froc/{method}/{split}/prediction_localization.csv",
            froc_of,
            split=config["splits"],
        ),
        caches=expand("results/cache/{split}.h5", split=config["splits"]),
    output:
        tables=multiext(R("tables/froc"), ".csv", ".md", ".tex"),
        figure=report(
            R("figures/froc.png"),
            caption="../report/froc.rst",
            category="Figures",
            subcategory=MODEL_SUBCATEGORY,
        ),
        pdf=R("figures/froc.pdf"),
    log:
        R("logs/froc_table.log"),
    benchmark:
        R("benchmarks/froc_table.tsv")
    conda:
        "../../envs/xiqa.yaml"
    threads: 1
    resources:
        mem_mb=4000,
        runtime=30,
    params:
        results=lambda wildcards, output: os.path.dirname(
            os.path.dirname(output.tables[0])
        ),
        methods=lambda wildcards: ",".join(froc_of(wildcards)),
        splits=",".join(config["splits"]),
    shell:
        "xiqa froc-table --results {params.results:q} --caches results/cache"
        " --methods {params.methods:q}"
        " --splits {params.splits} 2> {log:q}"


# Faithfulness (deletion, insertion, ROAD) of each method's maps per split, the chance maps once
# per split on the same images, then tables and a figure.


rule faithfulness:
    input:
        model=R("model/model.pt"),
        images="results/cache/{split}.h5",
        shards=method_shards,
    output:
        R("faithfulness/{method}/{split}.csv"),
    log:
        R("logs/faithfulness/{method}/{split}.log"),
    benchmark:
        R("benchmarks/faithfulness/{method}/{split}.tsv")
    conda:
        "../../envs/xiqa.yaml"
    threads: 2
    resources:
        mem_mb=8000,
        runtime=240,
    params:
        options=faithfulness_options(),
    shell:
        "xiqa faithfulness --model {input.model:q} --images {input.images:q} {params.options}"
        " --out {output:q} {input.shards:q} 2> {log:q}"


rule faithfulness_chance:
    input:
        model=R("model/model.pt"),
        images="results/cache/{split}.h5",
    output:
        R("faithfulness/_baselines/{split}.csv"),
    log:
        R("logs/faithfulness/_baselines/{split}.log"),
    benchmark:
        R("benchmarks/faithfulness/_baselines/{split}.tsv")
    conda:
        "../../envs/xiqa.yaml"
    threads: 2
    resources:
        mem_mb=8000,
        runtime=240,
    params:
        options=faithfulness_options(),
    shell:
        "xiqa faithfulness --chance --model {input.model:q} --images {input.images:q}"
        " {params.options} --out {output:q} 2> {log:q}"


rule faithfulness_table:
    input:
        per_model("faithfulness/{method}/{split}.csv", split=config["splits"]),
        expand(
            R("faithfulness/_baselines/{split}.csv"),
            split=config["splits"],
            allow_missing=True,
        ),
    output:
        tables=multiext(R("tables/faithfulness"), ".csv", ".md", ".tex"),
        figure=report(
            R("figures/faithfulness.png"),
            caption="../report/faithfulness.rst",
            category="Figures",
            subcategory=MODEL_SUBCATEGORY,
        ),
        pdf=R("figures/faithfulness.pdf"),
    log:
        R("logs/faithfulness_table.log"),
    benchmark:
        R("benchmarks/faithfulness_table.tsv")
    conda:
        "../../envs/xiqa.yaml"
    threads: 1
    resources:
        mem_mb=4000,
        runtime=30,
    params:
        results=lambda wildcards, output: os.path.dirname(
            os.path.dirname(output.tables[0])
        ),
        methods=methods_json(),
        splits=",".join(config["splits"]),
    shell:
        "xiqa faithfulness-table --results {params.results:q} --methods {params.methods:q}"
        " --splits {params.splits} 2> {log:q}"
