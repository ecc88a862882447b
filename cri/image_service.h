/* CRI ImageService handlers (PullImage, ImageStatus, ListImages, RemoveImage, ImageFsInfo) over
 * the image store (d->images). Registered in rpc_table.c; rules in rpc.h. */
#ifndef VGPU_IMAGE_SERVICE_H
#define VGPU_IMAGE_SERVICE_H

#include "rpc.h"

int vgpu_rpc_pull_image(struct vgpu_daemon *d, const ProtobufCMessage *req, ProtobufCMessage **resp,
			struct vgpu_err *err);
int vgpu_rpc_image_status(struct vgpu_daemon *d, const ProtobufCMessage *req, ProtobufCMessage **resp,
			  struct vgpu_err *err);
int vgpu_rpc_list_images(struct vgpu_daemon *d, const ProtobufCMessage *req, ProtobufCMessage **resp,
			 struct vgpu_err *err);
int vgpu_rpc_remove_image(struct vgpu_daemon *d, const ProtobufCMessage *req, ProtobufCMessage **resp,
			  struct vgpu_err *err);
int vgpu_rpc_image_fs_info(struct vgpu_daemon *d, const ProtobufCMessage *req, ProtobufCMessage **resp,
			   struct vgpu_err *err);

#endif
