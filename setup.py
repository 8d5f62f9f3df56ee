"""Package vitalwatch so that Dataflow's --setup_file can stage it.

Dataflow workers run `pip install .` on this file, so the runtime
dependencies below must match requirements.txt without the test tools.
"""

import setuptools

RUNTIME_REQUIRES = [
    "apache-beam[gcp]==2.62.0",
    "fastavro==1.13.1",
    "confluent-kafka[schemaregistry]==2.16.1",
    "numpy==2.2.6",
    "scikit-learn==1.9.1",
    "scipy==1.17.1",
]

setuptools.setup(
    name="vitalwatch",
    version="0.1.0",
    description="Streaming anomaly detection for wearable vital signs.",
    python_requires=">=3.10",
    packages=setuptools.find_packages(
        include=[
            "pipelines*",
            "transforms*",
            "models*",
            "runners*",
            "schemas*",
            "devices*",
        ]
    ),
    package_data={"schemas": ["avro/*.avsc", "avro/history/*.avsc"]},
    install_requires=RUNTIME_REQUIRES,
)
