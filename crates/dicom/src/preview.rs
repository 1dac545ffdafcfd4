//! PNG previews: the first frame decoded with dicom-pixeldata (native codecs: uncompressed,
//! RLE, JPEG baseline/extended/lossless, deflate), modality LUT and the data set's first
//! window (else the pixel range) applied, scaled down to fit a size limit.
