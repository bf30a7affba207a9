"""The Python JobWorker of the ActivateJobs reference, unchanged but for the address and the
API key, which come from JOBHOST_GRPC_ADDR and JOBHOST_API_KEY."""

import os

import grpc
import json
import time
import threading
from concurrent.futures import ThreadPoolExecutor

import jobs_pb2
import jobs_pb2_grpc

class JobWorker:
    def __init__(self, worker_name, job_type, max_jobs=10, timeout=30000):
        self.worker_name = worker_name
        self.job_type = job_type
        self.max_jobs = max_jobs
        self.timeout = timeout
        self.running = False
        
        self.channel = grpc.insecure_channel(os.environ['JOBHOST_GRPC_ADDR'])
        self.stub = jobs_pb2_grpc.JobsServiceStub(self.channel)
        self.metadata = [('x-api-key', os.environ['JOBHOST_API_KEY'])]
    
    def start(self):
        print(f"🚀 Запуск воркера {self.worker_name} для заданий типа {self.job_type}")
        self.running = True
        
        while self.running:
            try:
                self.activate_and_process_jobs()
            except KeyboardInterrupt:
                break
            except Exception as e:
                print(f"Ошибка воркера: {e}")
                time.sleep(5)
        
        self.running = False
        print(f"⏹️ Воркер {self.worker_name} остановлен")
    
    def activate_and_process_jobs(self):
        request = jobs_pb2.ActivateJobsRequest(
            type=self.job_type,
            worker=self.worker_name,
            timeout=self.timeout,
            max_jobs_to_activate=self.max_jobs,
            fetch_variable=['url', 'method', 'headers', 'body']
        )
        
        try:
            stream = self.stub.ActivateJobs(request, metadata=self.metadata)
            
            for response in stream:
                if not response.success:
                    print(f"⚠️ Активация не удалась: {response.error_message}")
                    continue
                
                if response.jobs:
                    print(f"📥 Получено {len(response.jobs)} заданий")
                    
                    with ThreadPoolExecutor(max_workers=self.max_jobs) as executor:
                        futures = [executor.submit(self.process_job, job) for job in response.jobs]
                        
                        for future in futures:
                            try:
                                future.result()
                            except Exception as e:
                                print(f"Ошибка обработки задания: {e}")
                
                if not self.running:
                    break
                    
        except grpc.RpcError as e:
            print(f"gRPC Error: {e.code()} - {e.details()}")
            time.sleep(5)
    
    def process_job(self, job):
        print(f"⚙️ Обработка задания {job.job_key} (тип: {job.type})")
        
        try:
            variables = json.loads(job.variables) if job.variables else {}
            
            if job.type == "http-request":
                self.process_http_job(job, variables)
            else:
                print(f"⚠️ Неизвестный тип задания: {job.type}")
                self.fail_job(job.job_key, job.retries - 1, "Unknown job type")
                
        except Exception as e:
            print(f"❌ Ошибка обработки задания {job.job_key}: {e}")
            self.fail_job(job.job_key, job.retries - 1, str(e))
    
    def process_http_job(self, job, variables):
        url = variables.get('url', '')
        method = variables.get('method', 'GET')
        
        print(f"🌐 HTTP {method} запрос к {url}")
        time.sleep(0.1)  # Имитация HTTP запроса
        
        if not url:
            self.fail_job(job.job_key, job.retries - 1, "URL is required")
            return
        
        result_variables = {
            'httpStatus': '200',
            'responseBody': '{"result": "success"}',
            'executionTime': '150ms',
            'completedAt': time.strftime('%Y-%m-%dT%H:%M:%SZ')
        }
        
        self.complete_job(job.job_key, result_variables)
    
    def complete_job(self, job_key, variables):
        request = jobs_pb2.CompleteJobRequest(
            job_key=job_key,
            variables=variables
        )
        
        try:
            response = self.stub.CompleteJob(request, metadata=self.metadata)
            
            if response.success:
                print(f"✅ Задание {job_key} успешно завершено")
            else:
                print(f"❌ Завершение задания {job_key} не удалось: {response.message}")
                
        except grpc.RpcError as e:
            print(f"❌ Ошибка завершения задания {job_key}: {e.details()}")
    
    def fail_job(self, job_key, retries, error_message):
        request = jobs_pb2.FailJobRequest(
            job_key=job_key,
            retries=retries,
            error_message=error_message
        )
        
        try:
            response = self.stub.FailJob(request, metadata=self.metadata)
            
            if response.success:
                print(f"⚠️ Задание {job_key} провалено: {error_message}")
                
        except grpc.RpcError as e:
            print(f"❌ Ошибка провала задания {job_key}: {e.details()}")
