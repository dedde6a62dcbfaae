"""Stands in for the model.py that aws/amazon-sagemaker-examples ships beside this serving.properties
(archived/workshops/deploy-falcon-40b-and-7b/falcon-7b-deepspeed.ipynb, cell %%writefile .../model.py); not reproduced.

That handler loads tiiuae/falcon-7b with transformers' AutoModelForCausalLM and AutoTokenizer, passing
trust_remote_code=True, so the model's own configuration_falcon.py (config.json auto_map) supplies the config class
that transformers 4.30.2 in the 0.23.0 image lacks. validate.py reads only that a model.py is present.
"""
