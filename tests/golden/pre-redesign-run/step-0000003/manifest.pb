 *fsdp2fp32:87de6d3385964dc3B"
config.jsonó85bff21677a079a1B,
generation_config.jsonK5de6f382ffdc63e5B(
trainer_state.jsonf9c8bbe3b5af3280cB"
recipe.yaml§87de6d3385964dc3B8
 shard-00000-of-00002.safetensorsð‰a1aafb5587344e3cB8
 shard-00001-of-00002.safetensors¨‰a20c77546ec3767dJÓ
model.embed_tokens.weight@ 8
 shard-00000-of-00002.safetensorsmasterF32(€0°8€@9
 shard-00000-of-00002.safetensorsexp_avgF32(€0°U8€@=
 shard-00000-of-00002.safetensors
exp_avg_sqF32(€0°•8€@Jù
model.norm.weight 7
 shard-00000-of-00002.safetensorsmasterF32(0°Õ8@8
 shard-00000-of-00002.safetensorsexp_avgF32(0ðÕ8@;
 shard-00000-of-00002.safetensors
exp_avg_sqF32(0°Ö8@8
 shard-00001-of-00002.safetensorsmasterF32 ( 0è8@9
 shard-00001-of-00002.safetensorsexp_avgF32 ( 0¨8@<
 shard-00001-of-00002.safetensors
exp_avg_sqF32 ( 0è8@Jâ
&model.layers.0.self_attn.q_proj.weight  9
 shard-00000-of-00002.safetensorsmasterF32(€0ðÖ8€ :
 shard-00000-of-00002.safetensorsexp_avgF32(€0ðö8€ =
 shard-00000-of-00002.safetensors
exp_avg_sqF32(€0ð–8€ Jâ
&model.layers.0.self_attn.k_proj.weight 9
 shard-00000-of-00002.safetensorsmasterF32(€0ð¶8€:
 shard-00000-of-00002.safetensorsexp_avgF32(€0ðÆ8€=
 shard-00000-of-00002.safetensors
exp_avg_sqF32(€0ðÖ8€Jâ
&model.layers.0.self_attn.v_proj.weight 9
 shard-00000-of-00002.safetensorsmasterF32(€0ðæ8€:
 shard-00000-of-00002.safetensorsexp_avgF32(€0ðö8€=
 shard-00000-of-00002.safetensors
exp_avg_sqF32(€0ð†8€Jâ
&model.layers.0.self_attn.o_proj.weight  9
 shard-00000-of-00002.safetensorsmasterF32(€0ð–8€ :
 shard-00000-of-00002.safetensorsexp_avgF32(€0ð¶8€ =
 shard-00000-of-00002.safetensors
exp_avg_sqF32(€0ðÖ8€ Jž
#model.layers.0.mlp.gate_proj.weight@ 9
 shard-00000-of-00002.safetensorsmasterF32( 0ðö8€1:
 shard-00000-of-00002.safetensorsexp_avgF32( 0ð§8€1=
 shard-00000-of-00002.safetensors
exp_avg_sqF32( 0ðØ8€1<
 shard-00001-of-00002.safetensorsmasterF32  (€0¨Ö8€=
 shard-00001-of-00002.safetensorsexp_avgF32  (€0¨å8€@
 shard-00001-of-00002.safetensors
exp_avg_sqF32  (€0¨ô8€JÈ
lm_head.weight@ 8
 shard-00001-of-00002.safetensorsmasterF32(€0¨8€@9
 shard-00001-of-00002.safetensorsexp_avgF32(€0¨V8€@=
 shard-00001-of-00002.safetensors
exp_avg_sqF32(€0¨–8€@JÝ
!model.layers.0.mlp.up_proj.weight@ 9
 shard-00001-of-00002.safetensorsmasterF32(€0¨ƒ8€@:
 shard-00001-of-00002.safetensorsexp_avgF32(€0¨Ã8€@=
 shard-00001-of-00002.safetensors
exp_avg_sqF32(€0¨ƒ8€@Jß
#model.layers.0.mlp.down_proj.weight @9
 shard-00001-of-00002.safetensorsmasterF32(€0¨Ã8€@:
 shard-00001-of-00002.safetensorsexp_avgF32(€0¨ƒ8€@=
 shard-00001-of-00002.safetensors
exp_avg_sqF32(€0¨Ã8€@JÝ
%model.layers.0.input_layernorm.weight 8
 shard-00001-of-00002.safetensorsmasterF32( 0¨ƒ8€9
 shard-00001-of-00002.safetensorsexp_avgF32( 0¨„8€<
 shard-00001-of-00002.safetensors
exp_avg_sqF32( 0¨…8€Jæ
.model.layers.0.post_attention_layernorm.weight 8
 shard-00001-of-00002.safetensorsmasterF32( 0¨†8€9
 shard-00001-of-00002.safetensorsexp_avgF32( 0¨‡8€<
 shard-00001-of-00002.safetensors
exp_avg_sqF32( 0¨ˆ8€PÒ	X