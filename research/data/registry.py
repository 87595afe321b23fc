"""The files the loaders read: relative path, sha256 and public source.

``sha256`` is the checksum of the file as it sits in the data directory (the layout of
``shared/data/MANIFEST.md``). For gzip files the public source re-compresses differently from the offline
copy, so they are verified by ``content_sha256``: the sha256 of the *decompressed* bytes, which is the same
for every copy. ``url`` is the public source (``None`` where the file was rebuilt and has no public copy
with these bytes; ``how`` then says how to obtain it).
"""
from __future__ import annotations

import dataclasses


@dataclasses.dataclass(frozen=True)
class FileEntry:
  path: str
  sha256: str | None = None
  content_sha256: str | None = None
  url: str | None = None
  how: str = ""


_FMNIST = "http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/"
_MNIST = "https://ossci-datasets.s3.amazonaws.com/mnist/"
_GH = "https://raw.githubusercontent.com/"
_STS = _GH + "Tiriar/intent-reco/4f7290a3c54305b5fe80557da370fb8a7aa44eae/data/stsbenchmark/"
_SHAKES = _GH + "karpathy/char-rnn/6f9487a6fe5b420b7ca9afb0d7c078e37c1d1b4e/data/tinyshakespeare/"
_COPYCAT = _GH + "abrazinskas/Copycat-abstractive-opinion-summarizer/04fe5393a7bb6883516766b762f6a0c530e95375/gold_summs/"
_FEWSUM = _GH + "abrazinskas/FewSum/0786bca7ae9b9e9107dc456561401037a2b89dce/artifacts/"
_T2V_ATEC = _GH + "shibing624/text2vec/e95fb5161976256f664294bb97ca373d57153bde/text2vec/data/ATEC/"
_T2V_STSB = _GH + "shibing624/text2vec/6f108422cc5af081da8671729d2ab95e3acbdc0d/examples/data/STS-B/"
_COSENT = _GH + "shawroad/CoSENT_Pytorch/ee67530e04c212b68ff14a4853c262f3881a1663/data/"
_REBUILT = ("this train file was rebuilt offline (see shared/data/MANIFEST.md section 1b: all rows of the "
            "`minidata` package's {task}.ft table minus the valid and test rows); rebuild it that way, or copy "
            "it from a checkout that has shared/data, and point `data_dir`/RESEARCH_DATA_DIR at that directory")

FILES: dict[str, FileEntry] = {e.path: e for e in [
    FileEntry("fashion_mnist/train-images-idx3-ubyte.gz",
              "b0564c3eedabfbf835052cff8503ea422014ce006caf5b757f851416ee8300c7",
              "c59f468a2f672dc815687fe0f83887768d799fd8a3f3276145d20f83aa44d888",
              _FMNIST + "train-images-idx3-ubyte.gz"),
    FileEntry("fashion_mnist/train-labels-idx1-ubyte.gz",
              "0ae29f65d86684f32d1b9c85147786c547b9c6aebcaf235f0400a0cce308b056",
              "bad3541b69d912435c50bb6ba87bec294ff4f6a2e1246121d8633921760443d9",
              _FMNIST + "train-labels-idx1-ubyte.gz"),
    FileEntry("fashion_mnist/t10k-images-idx3-ubyte.gz",
              "cc1d090a38ace84dfa1aa66e3ada7c336ef481a96936906477e6dd344da56eaa",
              "5b4141f0afbad91edebe8549f8fcffe087ea10ca49f1dbef5c9a5cd8815ce37b",
              _FMNIST + "t10k-images-idx3-ubyte.gz"),
    FileEntry("fashion_mnist/t10k-labels-idx1-ubyte.gz",
              "8d3605d196f4be44669e46906da9733c8131fef761fdbfec72c424d5222f1a05",
              "0402a96d92fd2663957122ceb108a494c5af83dab82d92729df917d7dec38c34",
              _FMNIST + "t10k-labels-idx1-ubyte.gz"),
    FileEntry("mnist_partial/t10k-images-idx3-ubyte.gz",
              "86bbfe8eb8a57f490eb6d21f76851d65272d8265c85213eb908de200ed401a5d",
              "0fa7898d509279e482958e8ce81c8e77db3f2f8254e26661ceb7762c4d494ce7",
              _MNIST + "t10k-images-idx3-ubyte.gz"),
    FileEntry("mnist_partial/t10k-labels-idx1-ubyte.gz",
              "100494bc9fe562c925b2ad518598bc5f41b2f23ab5ac3340f16ea99b3c39e880",
              "ff7bcfd416de33731a308c3f266cc351222c34898ecbeaf847f06e48f7ec33f2",
              _MNIST + "t10k-labels-idx1-ubyte.gz"),
    FileEntry("mnist_partial/train-labels-idx1-ubyte.gz",
              "33e915d3a42040685abefa52b90d4c394178919562da2d634fdfd28f935fc24e",
              "65a50cbbf4e906d70832878ad85ccda5333a97f0f4c3dd2ef09a8a9eef7101c5",
              _MNIST + "train-labels-idx1-ubyte.gz"),
    FileEntry("stsbenchmark/sts-train.csv",
              "0f71910b59aa1ad973c5897f0791f3b0965a92b8f82b1a95f3eea9f4162fda82", url=_STS + "sts-train.csv"),
    FileEntry("stsbenchmark/sts-dev.csv",
              "5d7e944d8b02734b07bfdb5df67db3420c64bed153fcaa1ba47ad03480cf4234", url=_STS + "sts-dev.csv"),
    FileEntry("stsbenchmark/sts-test.csv",
              "affe45928a66ee5a708531233c95b7dacbbdc57f974f002a3d32ea0180cf816a", url=_STS + "sts-test.csv"),
    FileEntry("tinyshakespeare/input.txt",
              "86c4e6aa9db7c042ec79f339dcb96d42b0075e16b8fc2e86bf0ca57e2dc565ed", url=_SHAKES + "input.txt"),
    FileEntry("opinion_summ/copycat_amazon/all.csv",
              "d64a83fdf1daeaa762a127e6ea384263435dc43c799a1d8f2675c0c10d7e8d84", url=_COPYCAT + "all.csv"),
    FileEntry("opinion_summ/copycat_amazon/dev.csv",
              "ddfac25ee8d1289d263c5c61b10e842123d4387da65edb77ce424e542d959538", url=_COPYCAT + "dev.csv"),
    FileEntry("opinion_summ/copycat_amazon/test.csv",
              "a9a81a90c41bcfd15c8bb331cccb8f2933d82d31c3e135721b7cffd38c32dec5", url=_COPYCAT + "test.csv"),
    FileEntry("opinion_summ/fewsum/amazon/train.csv",
              "708c90e209054c7e02095c40c70b7d84950603a13fc55abebb6feac9f8f57d2a",
              url=_FEWSUM + "amazon/gold_summs/train.csv"),
    FileEntry("opinion_summ/fewsum/amazon/val.csv",
              "31e510aa2ffce8f6882481ecc5d2ee6c1d19be6e7e78265e1c3874b6a8f7e032",
              url=_FEWSUM + "amazon/gold_summs/val.csv"),
    FileEntry("opinion_summ/fewsum/amazon/test.csv",
              "4fa81b4f2ea7a0b8239286ebc91faa350a02af0bb89cf66cc0f1a88d8cc4ac71",
              url=_FEWSUM + "amazon/gold_summs/test.csv"),
    FileEntry("opinion_summ/fewsum/yelp/train.csv",
              "072b9686de79d824ba160950489f4e2a8c1e5e7d66e2c031268d9d9c0a167e94",
              url=_FEWSUM + "yelp/gold_summs/train.csv"),
    FileEntry("opinion_summ/fewsum/yelp/val.csv",
              "54ee20016064e588d3933bdd57fc008398e8283d23524a14318c6f90f1404ab1",
              url=_FEWSUM + "yelp/gold_summs/val.csv"),
    FileEntry("opinion_summ/fewsum/yelp/test.csv",
              "1dd47c47531ef30684ca4735d89518de4b49ec03745208db585420304ac36f26",
              url=_FEWSUM + "yelp/gold_summs/test.csv"),
    FileEntry("senteval_cn/ATEC/ATEC.train.data",
              "04f34ff81b49424c0aff30759dcad59e1774e1f26cecc8791708afbbb5495782", how=_REBUILT.format(task="ATEC")),
    FileEntry("senteval_cn/ATEC/ATEC.valid.data",
              "994b6452cad5c0c1efca215f45f99b0cd26515de12936cc5aa23810b0b55f703", url=_T2V_ATEC + "ATEC.valid.data"),
    FileEntry("senteval_cn/ATEC/ATEC.test.data",
              "24c56edf6289a7f337af75553c360ece41a1e17e500cdb563f020ad25ece8319", url=_T2V_ATEC + "ATEC.test.data"),
    FileEntry("senteval_cn/BQ/BQ.train.data",
              "37d80cb8cc0aab7748455669221ece52630f230af1ff702721346ceef271a300", url=_COSENT + "BQ/BQ.train.data"),
    FileEntry("senteval_cn/BQ/BQ.valid.data",
              "fe7ccff114f4d9ad75f8468a65437eb52d22e5fb8ca1d56a25340ba4c367442b", url=_COSENT + "BQ/BQ.valid.data"),
    FileEntry("senteval_cn/BQ/BQ.test.data",
              "9592b13afdfdc034d3d1b883d58807ea21989624d94e321bb802efb08d98c6d1", url=_COSENT + "BQ/BQ.test.data"),
    FileEntry("senteval_cn/LCQMC/LCQMC.train.data",
              "2a31966a3940a83127b2a2f06167c2a90dc5d4e7811fee8ed8b3a020a11b0c69", how=_REBUILT.format(task="LCQMC")),
    FileEntry("senteval_cn/LCQMC/LCQMC.valid.data",
              "d3cd41ed89b8f6196a76ebff2aa03d5ecf42edcd12942aa865d34f7e570af7c2", url=_COSENT + "LCQMC/LCQMC.valid.data"),
    FileEntry("senteval_cn/LCQMC/LCQMC.test.data",
              "8969f9c16050f40df9da6f591443a47bc14c17a504a354ee4cc4ab5b9aa303d9", url=_COSENT + "LCQMC/LCQMC.test.data"),
    FileEntry("senteval_cn/PAWSX/PAWSX.train.data",
              "06c5522c0ea4ca2123a8b811b8e34dac24a05aa1adacfbb8525cd4b9d7b01c24", how=_REBUILT.format(task="PAWSX")),
    FileEntry("senteval_cn/PAWSX/PAWSX.valid.data",
              "3a9da4b372d981e607eaf9b4ad4a1db0c0a7040f54535870198bda7f13e07dd2", url=_COSENT + "PAWSX/PAWSX.valid.data"),
    FileEntry("senteval_cn/PAWSX/PAWSX.test.data",
              "1e8aa66616c4f50499292aabd4a8c01685056f06ff2e97a977d836968cc50c11", url=_COSENT + "PAWSX/PAWSX.test.data"),
    FileEntry("senteval_cn/STS-B/STS-B.train.data",
              "456904474b184025fc620fa62d887bdcd6c0de28bc94888602fc8112b8d0719c", url=_T2V_STSB + "STS-B.train.data"),
    FileEntry("senteval_cn/STS-B/STS-B.valid.data",
              "5d3297cb522b763970631790508c567a141be4d3b729669ae2a19743383340c6", url=_T2V_STSB + "STS-B.valid.data"),
    FileEntry("senteval_cn/STS-B/STS-B.test.data",
              "a22c0e4dba5d589b8f68feca2c11329031fdaee084c37c30ebea7feea12a3545", url=_T2V_STSB + "STS-B.test.data"),
]}
