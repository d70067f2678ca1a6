"""Does the DCN-v2 ranker help when trained on held-out images? 3-fold cross-validation on the dev split:
the ranker learns from 2/3 of dev (true + cross-fitted aligned lite0/lite1 embeddings) and re-ranks the other
third (aligned lite0), against plain prior-weighted retrieval. Run: python bench/ranker_on_dev.py"""
import time

import numpy as np
import torch

from slime_core.stages import retrieve
from slime_core.stages.bundle import load_bundle
from slime_core.stages.encoders import get_encoder
from slime_core.stages.metrics import NeighbourhoodScorer
from slime_core.stages.rank import RankerConfig, rerank, train_ranker
from slime_core.training.build import cross_fitted, evaluate_tags, top_tags

torch.set_num_threads(2)
b=load_bundle()
splits=np.array(b.pool['splits']); dev=np.where(splits=='dev')[0]
A=b.pool_embeddings['lite2']; tag_id={t:i for i,t in enumerate(b.tags)}
P=np.zeros((len(A),len(b.tags)),bool)
for i,ts in enumerate(b.pool['tags']): P[i,[tag_id[t] for t in ts if t in tag_id]]=True
tv=retrieve.project_tags(b.heads,b.tag_text); prior=retrieve.log_prior(b.tag_counts)
scale=b.manifest['logit_scale']; alpha=b.manifest['prior_alpha']
variants={'true':A}
for v in ('lite0','lite1'): variants[v]=cross_fitted(b.pool_embeddings[v],A,5,0)
U={k:retrieve.project_images(b.heads,retrieve.image_features(E,b.semantics)) for k,E in variants.items()}
q,keys=retrieve.with_prior(np.zeros((1,tv.shape[1]),np.float32),tv,prior,1,0)
idx=retrieve.TagIndex(keys)
def cand(u,k): return idx.search(retrieve.with_prior(u,tv,prior,scale,alpha)[0],k)
text=get_encoder('minilm'); sc=NeighbourhoodScorer(b.tags,b.tag_text,lambda ts: text.encode_texts(ts),m=5)
refs=[b.pool['tags'][i] for i in dev]
rng=np.random.default_rng(0); folds=np.array_split(rng.permutation(len(dev)),3)
base=[];rk=[]
for cfg in [RankerConfig(candidates=50,epochs=10,lr=1e-3), RankerConfig(candidates=50,epochs=30,lr=5e-4)]:
  res_b=[];res_r=[]
  for f in folds:
    tr=np.setdiff1d(np.arange(len(dev)),f)
    Utr=np.concatenate([U[k][dev[tr]] for k in U]); Ptr=np.concatenate([P[dev[tr]] for _ in U])
    _,c=cand(Utr,cfg.candidates)
    t=time.time(); r=train_ranker(Utr,c,Ptr,tv,prior,cfg,scale,alpha)
    ue=U['lite0'][dev[f]]; s,ce=cand(ue,cfg.candidates)
    rf=[refs[i] for i in f]
    res_b.append(evaluate_tags(top_tags(s,ce,b.tags,10),rf,sc))
    res_r.append(evaluate_tags(top_tags(*rerank(r,ue,ce,tv,prior),b.tags,10),rf,sc))
  print(cfg.epochs, cfg.lr, 'base',{k:np.mean([x[k] for x in res_b]) for k in res_b[0]}, 'ranked',{k:np.mean([x[k] for x in res_r]) for k in res_r[0]}, round(time.time()-t,1))
